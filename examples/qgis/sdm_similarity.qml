<qgis version="3.34" styleCategories="Symbology">
  <!-- prom3e-geo style: sdm similarity band (written with the rescale option: 0 to 1) -->
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" alphaBand="-1" classificationMin="0.0" classificationMax="1.0" nodataColor="">
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" minimumValue="0.0" maximumValue="1.0">
          <item alpha="255" value="0" label="0" color="#ffffe5"/>
          <item alpha="255" value="0.25" label="0.25" color="#d9f0a3"/>
          <item alpha="255" value="0.5" label="0.5" color="#78c679"/>
          <item alpha="255" value="0.75" label="0.75" color="#238443"/>
          <item alpha="255" value="1" label="1" color="#004529"/>
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0"/>
    <rasterresampler maxOversample="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
